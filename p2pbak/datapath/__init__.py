"""The data path: chunk, compress, encrypt, pack, erasure-code, trees. No HTTP here."""
