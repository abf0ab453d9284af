"""Embedded engines that run on this machine with packaged weights: no network needed."""
