//! Hostile and faulty traffic: limits, slow clients, broken downstreams, shutdown under load.
