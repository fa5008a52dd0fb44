"""Wire-faithful emulators of the speech-to-speech services, for tests.

They are real servers (TLS, HTTP/2, the providers' framing and signing) with their own
codecs, written from the published formats and never sharing code with plugins/ or agent/.
"""
