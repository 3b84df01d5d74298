/* ess_breaker -- not yet written */
