"""Data: in-memory IDX datasets (MNIST, Fashion-MNIST), ImageFolder, orderings, distortions."""
