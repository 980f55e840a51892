"""sky_data: problems, teacher traces, rewriting and verification for the SFT set (work in progress)."""
