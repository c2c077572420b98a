"""storeflow.esl"""
