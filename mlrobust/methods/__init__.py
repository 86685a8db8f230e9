"""One module per paper: the parts of a method that are not a loss or a head
(relabeling, propagation, similarity learning, corruption matrices)."""
