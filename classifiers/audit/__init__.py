"""What the codes say about the data: duplicates, likely wrong labels, outliers."""
