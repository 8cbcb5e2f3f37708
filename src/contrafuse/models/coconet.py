"""CoCoNet (Liu et al., IJCV 2024). Being implemented; see issue 5."""
