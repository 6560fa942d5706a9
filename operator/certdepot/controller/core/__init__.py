"""The bottom layer: settings and clock, errors and their classification, status documents and
conditions, the certificate facts status reports, and the names shared with the kubectl plugin."""
