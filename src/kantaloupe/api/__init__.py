"""The contract: resource names, annotation keys, wire codecs and typed errors."""
