"""Code that runs on the server platform: the model repository builder, the in-process
ceiling and the wait for a server's models to be AVAILABLE (`servelab models ...`,
`servelab wait-available`)."""
