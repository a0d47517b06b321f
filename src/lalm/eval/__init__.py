"""Evaluation of the model's free-text answers: text normalisation, WER/CER, BLEU, label mapping and
accuracy, and the preference summary (metrics)."""
