"""The data side of training: sources and known corpora, cleaners, corpora split into parts, the token cache,
synthetic text, and `prepare-data`."""
