"""gonka: miner and wallet for the Gonka decentralized AI-compute network."""

__version__ = "0.1.0"
