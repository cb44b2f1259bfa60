//! ferrolb-speaker: per-node announcement decisions and BGP sessions. (being written)
