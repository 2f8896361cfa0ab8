"""Security of a deployment: the ACLs a topology's workers need (:mod:`.acls`)."""
