"""The ExFairS study (issue #8) as a library: collect a sweep's results (`data`), compare
experiments over seeds (`stats`), write the document's tables and facts (`tables`, `facts`,
`markdown`), its figures (`figures`) and the whole document (`document`); `cli.main` is what
studies/run_study.py runs. It lives under the simulator because it runs sweeps and names
policies; the generic summary statistics are `exfairs.summary`."""
