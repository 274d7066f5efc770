"""Shared plumbing for the wikimem services: configuration, gRPC server bootstrap, errors, timings, vectors."""
