"""``python -m embeddings_squeeze <command>`` runs the same commands as ``embeddings-squeeze``."""

from embeddings_squeeze.cli import main

main()
