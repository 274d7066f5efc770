"""`wikimem serve`: the five services on one machine, for local use and tests.

A separate distribution (wikimem-launcher) so that the client never imports a service: the `wikimem` CLI finds the
`serve` command through the `wikimem.cli` entry point this package declares.
"""
