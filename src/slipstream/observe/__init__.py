"""Seeing inside a running loop: each module of this package is one way of looking."""
