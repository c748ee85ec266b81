"""Workload sources: built-in sample generators and file importers."""
