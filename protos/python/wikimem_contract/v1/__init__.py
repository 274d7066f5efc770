"""Generated gRPC/protobuf stubs for the wikimem.v1 contract (protos/wikimem/v1). Do not edit: run `make protos`."""
