"""The HTML report: tables, figures and maps over every run, curve and audit in the store."""
