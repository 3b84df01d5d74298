/* ess_shape -- not yet written */
