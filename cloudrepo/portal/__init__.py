"""The portal (`cloudrepo serve`): accounts, quotas, slices, live deploys and a browser console, on the
same code as the command line (`cloudrepo.engine.Slices`, `cloudrepo.stackfile`, `cloudrepo.edits`)."""
