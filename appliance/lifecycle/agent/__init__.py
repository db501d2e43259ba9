"""The node agent: reconciles the Replica rows placed on this node with running engine processes."""
