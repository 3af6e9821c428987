"""Not a rule of its own: a module that does not import (its SDK wants a setting). Every check says so."""

raise RuntimeError("the SDK needs MYCLOUD_REGION")
