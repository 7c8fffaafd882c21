"""Web pages for students, operators, school administrators and the province.

Pages are rendered on the server with Jinja2, in Simplified Chinese unless the reader
switched to English. They call the same services as the JSON API; the little JavaScript
they carry refreshes live figures from the API with the page's session cookie.
"""
