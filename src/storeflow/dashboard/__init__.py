"""storeflow.dashboard"""
