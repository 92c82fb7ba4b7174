"""The user's side: network repository and repository lock."""
