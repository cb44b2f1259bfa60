//! ferrolb-testlab: network-namespace test harness. (being written)
