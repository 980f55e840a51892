"""sky_data: problems -> teacher traces -> rewrite -> verified, deduplicated SFT set (`python -m sky_data`).

Modules: `schema` (Problem), `sources/` (datasets into Problems), `dedup` (duplicates, benchmark overlap),
`backends/` (generation, shared with sky_eval), `prompts/`, `select` (the judge), `cache` and `store`
(resumable files), `pipeline` (the stages, top to bottom), `verify/` (math and code verifiers), `bench`.
"""
