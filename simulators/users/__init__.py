"""User simulators: the user-model interface, the EM-trained model, its training and evaluation."""
