"""One module per notebook: run(params) -> tables + figures."""
