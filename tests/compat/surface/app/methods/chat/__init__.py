from . import history, post_message, receive_message
