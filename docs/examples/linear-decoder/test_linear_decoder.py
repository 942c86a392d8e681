from prakit_linear_decoder import LinearDecoderConfig

from prakit.testing import DecoderContract


class TestLinearDecoder(DecoderContract):
    config = LinearDecoderConfig(state_dim=4)
