"""Benchmarks: tokenstore-sql beside globus-sdk's own storages and the bare drivers.

Run ``python -m benchmarks.run --help`` from the checkout.
"""
