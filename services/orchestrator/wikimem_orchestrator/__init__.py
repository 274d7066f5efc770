"""The wikimem orchestrator (wikimem.v1.Rag): embed -> retrieve -> rerank -> read, with caching and the write path."""
