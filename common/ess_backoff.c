/* ess_backoff -- not yet written */
