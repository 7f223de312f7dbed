"""arprelay: the switch's provider next hops (IP -> MAC), relayed to every server of the PoP."""
