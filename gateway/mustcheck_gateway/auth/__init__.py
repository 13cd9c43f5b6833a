"""Who may see what (R8): authentication, callers, grants, tokens, rate limits."""
