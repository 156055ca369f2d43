"""The commands: thin Hydra entry points (`challenge <command>`, see challenge.cli) over the libraries."""
