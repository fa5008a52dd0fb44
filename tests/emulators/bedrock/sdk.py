"""Build the real aws-sdk-bedrock-runtime client for an emulator (tests and tools only)."""

from __future__ import annotations

from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
from smithy_aws_core.identity import AWSCredentialsIdentity, StaticCredentialsResolver
from smithy_http.aio.crt import AWSCRTHTTPClient

from .emulator import ACCESS_KEY, REGION, SECRET_KEY


async def make_client(
    url: str,
    *,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    session_token: str | None = None,
    region: str = REGION,
) -> AsyncBedrockRuntimeClient:
    """A client with the CRT transport (HTTP/2 duplex) and static dummy credentials.

    SSL_CERT_FILE must already point at the emulator's CA: AWSCRTHTTPClient() builds its
    TLS context in its constructor.
    """
    config = await AsyncBedrockRuntimeConfig.resolve(
        endpoint_uri=url,
        region=region,
        transport=AWSCRTHTTPClient(),
        aws_credentials_identity_resolver=StaticCredentialsResolver(
            AWSCredentialsIdentity(
                access_key_id=access_key,
                secret_access_key=secret_key,
                session_token=session_token,
            )
        ),
    )
    return AsyncBedrockRuntimeClient(config=config)
