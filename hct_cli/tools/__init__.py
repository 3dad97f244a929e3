"""Tools over MCP: the score's servers, started on first use, and the calls agents make to them.

:mod:`hct_cli.tools.base` is the interface the engine sees (a :class:`~hct_cli.tools.base.ToolBox`
of one run); :mod:`hct_cli.tools.mcp_client` is the only module importing the ``mcp`` SDK.
"""
