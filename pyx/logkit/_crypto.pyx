# Sealed messages: ChaCha20-Poly1305 in C (filled in with the sealing work).
