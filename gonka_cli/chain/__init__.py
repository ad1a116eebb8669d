"""Talking to a Gonka chain: amounts, protobuf transactions, SDK error codes, the REST client."""
