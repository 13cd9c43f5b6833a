"""The check pipeline's parts beyond the flat modules: replay of audited checks."""
