"""A local grid on loopback: the demo and the end-to-end tests' grid."""
