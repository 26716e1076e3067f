"""The `cloudrepo` command: slices as Pulumi stacks, edited verb by verb (Automation API), and drawn."""
