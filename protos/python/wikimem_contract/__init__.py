"""The wikimem contract shared by services and clients: generated `wikimem.v1` stubs (`wikimem_contract.v1`), the
content hash, and the gRPC metadata keys. Nothing here imports a service or the client."""
