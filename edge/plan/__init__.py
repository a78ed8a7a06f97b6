"""The build layer: plan the best spec per device, export, verify, measure, report."""
