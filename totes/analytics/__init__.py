"""For analysts: the warehouse's views as polars frames, the processed lake read in place,
and the notebook's charts. Laptop only: no Lambda ships it (extra ``notebook``)."""
